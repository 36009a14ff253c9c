"""The header fields a disclosure carries, stated once for the tests that check raw messages."""

TOP_LEVEL_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "content-language",
        "x-notifier-case",
        "x-notifier-log-head",
        "mime-version",
        "content-type",
    }
)
