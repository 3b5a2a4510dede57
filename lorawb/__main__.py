from lorawb.cli import main

raise SystemExit(main())
