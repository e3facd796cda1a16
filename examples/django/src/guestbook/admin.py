from django.contrib import admin

from guestbook.models import Entry


@admin.register(Entry)
# ModelAdmin is generic only in django-stubs (ModelAdmin[Entry] fails at run time).
class EntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "text", "created", "node", "word_count", "counted_by")
    list_filter = ("node",)
    search_fields = ("text",)
    readonly_fields = ("created",)
