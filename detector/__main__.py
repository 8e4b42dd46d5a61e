from detector.app import main

raise SystemExit(main())
