"""Creates (or updates) the test user and sealgate's client. Run with `manage.py shell -c`
semantics: `python -m interop_dot.setup_client` after django.setup().

Environment: CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS, POST_LOGOUT_REDIRECT_URIS (space-separated),
TEST_USER, TEST_PASSWORD."""

import os

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402

User = get_user_model()
user, _ = User.objects.get_or_create(username=os.environ["TEST_USER"])
user.set_password(os.environ["TEST_PASSWORD"])
user.is_staff = True  # the admin login page only signs in staff
user.email = f"{user.username}@example.test"
user.first_name = "Interop"
user.last_name = user.username
user.save()

Application.objects.filter(client_id=os.environ["CLIENT_ID"]).delete()
Application.objects.create(
    name="sealgate",
    client_id=os.environ["CLIENT_ID"],
    client_secret=os.environ["CLIENT_SECRET"],
    client_type=Application.CLIENT_CONFIDENTIAL,
    authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
    redirect_uris=os.environ["REDIRECT_URIS"],
    post_logout_redirect_uris=os.environ["POST_LOGOUT_REDIRECT_URIS"],
    algorithm=Application.RS256_ALGORITHM,
    skip_authorization=True,
)
print(f"dot: user {user.username} (sub {user.pk}), client {os.environ['CLIENT_ID']}")
