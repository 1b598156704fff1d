from distgan.cli import main

raise SystemExit(main())
