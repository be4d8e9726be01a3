import sys

from videomage.cli import main

sys.exit(main())
