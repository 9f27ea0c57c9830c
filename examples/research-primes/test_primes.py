from primes import count_primes


def test_small_limits():
    assert [count_primes(limit) for limit in range(0, 12)] == [0, 0, 0, 1, 2, 2, 3, 3, 4, 4, 4, 4]


def test_larger_limits():
    assert count_primes(100) == 25
    assert count_primes(1000) == 168
    assert count_primes(7919) == 999
    assert count_primes(7920) == 1000
