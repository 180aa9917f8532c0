"""The app's routers, one per concern: :mod:`.jobs` (uploads, jobs), :mod:`.files` (the page, volumes,
downloads) and :mod:`.review` (a batch under review)."""
