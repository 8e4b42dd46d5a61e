from generator.app import main

raise SystemExit(main())
