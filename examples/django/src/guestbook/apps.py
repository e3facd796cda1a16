from django.apps import AppConfig


class GuestbookConfig(AppConfig):
    name = "guestbook"
    default_auto_field = "django.db.models.BigAutoField"
