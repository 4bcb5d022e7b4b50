"""Entry point for ``python -m geossl``."""

from geossl.cli import main

if __name__ == "__main__":
    main()
