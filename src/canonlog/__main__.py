from canonlog.infrastructure.cli import main

raise SystemExit(main())
