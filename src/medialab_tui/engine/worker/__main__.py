from medialab_tui.engine.worker.main import main

raise SystemExit(main())
