import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

from config.chunked import ChunkedBodyMiddleware  # noqa: E402  (needs the settings)

# Bodies sent chunked reach the views as any other (config/chunked.py).
application = ChunkedBodyMiddleware(application)
