from ar_guide.cli import main

raise SystemExit(main())
