"""The benchmark suite: ``python -m bench`` (``make bench``). Not part of ``make test``.

Measures, by commands anyone can run: the backtest of each trace in ``bench/traces`` against its
goals, how fast a 6-hour trace replays, and the footprint of ``topup-guard run`` (memory when idle,
CPU per poll cycle, time to ready) against a simulator subprocess. Results are printed and written
as markdown to ``bench/RESULTS.md``.
"""
