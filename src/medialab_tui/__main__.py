from medialab_tui.cli import main

raise SystemExit(main())
