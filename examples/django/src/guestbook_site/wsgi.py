"""The WSGI application: `gunicorn guestbook_site.wsgi:application`.

Gunicorn preloads it in its master process before forking the workers. Nothing here
connects to a database or Redis: Django opens those lazily, in the worker that uses them.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "guestbook_site.settings")

application = get_wsgi_application()
