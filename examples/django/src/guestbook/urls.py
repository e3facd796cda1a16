from django.urls import path

from guestbook import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("whoami", views.whoami, name="whoami"),
    path("entries/", views.create_entry, name="create-entry"),
    path("entries/<int:entry_id>/", views.entry_detail, name="entry-detail"),
    path("entries/<int:entry_id>/count/", views.count_entry, name="count-entry"),
]
