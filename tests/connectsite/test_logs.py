"""connectsite/logs.py: what reaches a log line."""

import logging

from connectsite.logs import NoQueryString


def test_runservers_request_lines_lose_their_query_string_and_so_any_page_token(caplog):
    logger = logging.getLogger("django.server")
    with caplog.at_level(logging.INFO, logger="django.server"):
        logger.addFilter(NoQueryString())
        try:
            logger.info('"%s" %s %s', "GET /pages/hello?xdm_e=x&jwt=eyJ.secret.token HTTP/1.1", "200", "512")
        finally:
            logger.filters.clear()
    assert '"GET /pages/hello HTTP/1.1" 200 512' in caplog.text
    assert "jwt" not in caplog.text and "secret.token" not in caplog.text


def test_the_settings_filter_runservers_logger():
    from django.conf import settings

    assert "no_query_string" in settings.LOGGING["loggers"]["django.server"]["filters"]
