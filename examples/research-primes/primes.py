def count_primes(limit):
    """How many prime numbers are smaller than `limit`."""
    count = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, n)):
            count += 1
    return count
