"""What verifying one access token costs: the old HS256 against EdDSA and ES256 (ADR 0019).

Usage: python bench/token_verify.py [COUNT]

Verifies the same claims COUNT times (default 5,000) per algorithm with PyJWT, as the
APIs' bearer guard does (audience and issuer checked), and prints the CPU microseconds per
verification, twice, so the noise shows.
"""

from __future__ import annotations

import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519


def _per_verify(token: str, key: object, alg: str, count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        jwt.decode(token, key, algorithms=[alg], audience="flightbook", issuer="flightbook")  # type: ignore[arg-type]
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    now = int(time.time())
    claims = {
        "sub": "c0ffee00-0000-4000-8000-000000000000",
        "roles": ["customer"],
        "iat": now,
        "exp": now + 300,
        "aud": "flightbook",
        "iss": "flightbook",
        "sid": "s" * 22,
    }
    secret = "a shared secret of thirty-two bytes!"  # noqa: S105 - a throwaway, for HS256
    edwards = ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "HS256": (jwt.encode(claims, secret, algorithm="HS256"), secret),
        "EdDSA": (jwt.encode(claims, edwards, algorithm="EdDSA"), edwards.public_key()),
        "ES256": (jwt.encode(claims, p256, algorithm="ES256"), p256.public_key()),
    }
    for _ in range(2):
        figures = [f"{alg} {_per_verify(t, k, alg, count):.1f} µs" for alg, (t, k) in cases.items()]
        print("CPU per verification: " + ", ".join(figures))


if __name__ == "__main__":
    main()
