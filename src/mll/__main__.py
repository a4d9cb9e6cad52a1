from mll.cli import main

raise SystemExit(main())
