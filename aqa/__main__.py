import sys

from aqa.cli.main import main

sys.exit(main())
