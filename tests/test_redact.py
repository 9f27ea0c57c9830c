"""What the record masks: every secret format a repository, a command or an environment can show,
whole, and nothing that is only code or a count."""

from __future__ import annotations

import pytest

from tether.redact import MASK, mask

PEM_BODY = "MIIEowIBAAKCAQEA7bq9xPl2kqGJ0yVcJx1nV2Z4l5fQ8hY3"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
# (text, the secret part that must not survive)
SECRETS = [
    (f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----", PEM_BODY),
    (f'"private_key": "-----BEGIN PRIVATE KEY-----\\n{PEM_BODY}\\n-----END PRIVATE KEY-----\\n"', PEM_BODY),
    (f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n(cut off)", PEM_BODY),
    (f"token: {JWT}", "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("ghp_1234567890abcdefghijklmnopqrstuvwxyzAB", "AB"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG"),
    ("password = 'correcthorsebattery'", "correcthorsebattery"),
    ('{"password": "hunter2hunter2"}', "hunter2hunter2"),
    ("DB_PASSWORD=Xy7#kLm9$qRt2", "Xy7#kLm9"),
    ("export API_KEY=9f8e7d6c5b4a39281706", "9f8e7d6c5b4a39281706"),
    ("DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abcdefghij0123456789ABCDEFGHIJ==;EndpointSuffix=y",
     "abcdefghij0123456789"),
    ("client_secret: 'Zq8wX2vB7nM4kL1p'", "Zq8wX2vB7nM4kL1p"),
    ("https://admin:S3cr3tPassw0rd@db.example.com/x", "S3cr3tPassw0rd"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
]
NOT_SECRETS = [
    "api_key = os.environ.get('OPENAI_API_KEY')", "max_output_tokens=768", "input_tokens=12345678",
    "TOKEN_URL = 'https://oauth2.googleapis.com/token'", "password: str = field(default='')", "token = tokens[0]",
    "secret_name = get_secret_name()", "PASSWORD=$DB_PASSWORD", "def check_password(password: str) -> bool:",
    "self.access_key = access_key", "{'usage': {'prompt_tokens': 809, 'completion_tokens': 1024}}",
    "the tokens per task: 39,144", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n",
]


@pytest.mark.parametrize("text, secret", SECRETS)
def test_the_whole_secret_is_masked(text: str, secret: str):
    masked = mask(text, [])
    assert secret not in masked and MASK in masked, masked


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_code_and_counts_stay_readable(text: str):
    assert mask(text, []) == text


def test_the_name_around_a_masked_value_stays():
    assert mask("DB_PASSWORD=Xy7#kLm9$qRt2\nDEBUG=1", []) == f"DB_PASSWORD={MASK}\nDEBUG=1"
    assert mask("https://admin:S3cr3tPassw0rd@db/x", []) == f"https://admin:{MASK}@db/x"
