import os

os.environ.setdefault(
    "TIKTOKEN_CACHE_DIR",
    os.path.normpath(
        os.path.join(
            os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "shared", "tiktoken"
        )
    ),
)
