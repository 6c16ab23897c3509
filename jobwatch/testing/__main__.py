"""`python -m jobwatch.testing`: serve jobs from a fake Cloud Controller in its own process."""

from __future__ import annotations

from ._fake import main

if __name__ == "__main__":
    main()
