"""The annotate stage: ask a vision provider what an image shows, in one neutral shape."""
