from topup_guard.cli import main

raise SystemExit(main())
