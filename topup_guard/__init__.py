"""topup-guard: keeps a Vonage prepaid balance from running dry, and never charges twice."""

__version__ = "0.1.0"
