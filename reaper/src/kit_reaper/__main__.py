from kit_reaper.cli import main

raise SystemExit(main())
