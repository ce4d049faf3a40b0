import sys

from styleclip_desktop.cli import main

sys.exit(main())
