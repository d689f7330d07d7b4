"""The bounded memory of fingerprints a shared seen-set holds."""

from framework.frontier.known import Known


def test_known_keeps_two_generations_and_forgets_the_oldest() -> None:
    known = Known(size=3)
    known.update([1, 2])
    assert 1 in known and 3 not in known
    known.update([3])  # the first generation is full: it becomes the old one
    known.update([4, 5, 6])  # so is the second: the first is forgotten
    assert 1 not in known and 3 not in known
    assert all(key in known for key in (4, 5, 6)) and len(known) == 3
    known.update([7])
    assert 4 in known and 7 in known and len(known) == 4
