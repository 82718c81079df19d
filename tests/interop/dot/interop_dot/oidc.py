"""The test provider's two customisations, both documented django-oauth-toolkit extension
points: ID-token and userinfo claims beyond `sub` (a validator's get_additional_claims), and
access tokens that are RS256 JWTs (RFC 9068 shape) signed with the OIDC key, so that the test
API can verify them against the provider's JWKS."""

import time
import uuid

from django.conf import settings
from jwcrypto import jwk, jwt
from oauth2_provider.oauth2_validators import OAuth2Validator

_KEY = jwk.JWK.from_pem(settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"].encode())


class Validator(OAuth2Validator):

    def get_additional_claims(self, request):
        user = request.user
        return {
            "name": f"{user.first_name} {user.last_name}".strip() or user.username,
            "preferred_username": user.username,
            "email": user.email,
            "email_verified": True,
        }


def jwt_access_token(request):
    now = int(time.time())
    claims = {
        "iss": settings.ISSUER,
        "sub": str(request.user.pk),
        "aud": settings.API_AUDIENCE,
        "client_id": request.client.client_id,
        "scope": " ".join(request.scopes),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + int(request.expires_in),
    }
    token = jwt.JWT(header={"alg": "RS256", "typ": "at+jwt", "kid": _KEY.thumbprint()}, claims=claims)
    token.make_signed_token(_KEY)
    return token.serialize()
