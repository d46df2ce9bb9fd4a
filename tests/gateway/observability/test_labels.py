from gateway.observability.labels import OTHER, UNKNOWN, BoundedValues, status_label


def test_bounded_values_pass_known_values_and_cap_new_ones() -> None:
    bounded = BoundedValues(2)
    assert bounded("a") == "a"
    assert bounded("b") == "b"
    assert bounded("c") == OTHER  # a third value would be a new series
    assert bounded("a") == "a"  # values already exported keep their series
    assert bounded(None) == UNKNOWN
    assert bounded("") == UNKNOWN


def test_overlong_values_are_never_labels() -> None:
    assert BoundedValues(10)("x" * 129) == OTHER


def test_statuses_are_exact_for_known_codes_and_classes_otherwise() -> None:
    assert [status_label(s) for s in (200, 404, 429, 499, 502)] == [
        "200",
        "404",
        "429",
        "499",
        "502",
    ]
    assert status_label(418) == "4xx"
    assert status_label(207) == "2xx"
    assert status_label(0) == UNKNOWN
