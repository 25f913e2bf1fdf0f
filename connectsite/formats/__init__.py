"""Date and time formats for admin, by language (settings.FORMAT_MODULE_PATH)."""
