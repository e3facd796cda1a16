from django.db import models


class Entry(models.Model):
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
    # KIT_NODE of the app node that wrote the entry.
    node = models.CharField(max_length=255, blank=True)
    # Set by the RQ job guestbook.jobs.count_words.
    word_count = models.IntegerField(null=True, blank=True)
    counted_by = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name_plural = "entries"
        ordering = ("-created",)

    def __str__(self) -> str:
        return f"{self.pk}: {self.text[:40]}"
