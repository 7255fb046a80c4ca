import sys

from genius.stages.cli import main

sys.exit(main())
