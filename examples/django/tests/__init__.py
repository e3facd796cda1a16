import pytest

# Database tests read through the "replica" alias (the router): a second connection to the
# test database that sees only what "default" committed, as a real replica does. Hence
# transactional tests (writes are committed), on both aliases.
db = pytest.mark.django_db(transaction=True, databases=["default", "replica"])
