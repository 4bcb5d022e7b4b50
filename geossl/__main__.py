"""Entry point for ``python -m geossl``."""

from geossl.main import main

if __name__ == "__main__":
    main()
