from quotaflow.engine.words import plural


def test_plural_says_one_without_an_s_and_every_other_count_with_one() -> None:
    assert plural(1, "key") == "1 key"
    assert plural(0, "key") == "0 keys"
    assert plural(2, "provider") == "2 providers"
