"""A plain function that needs a package sparkgate does not have: ``sparkgate_testdep``, a tiny
wheel tests/test_environments.py writes and deploys as its artifact's requirement. Imported
inside the function, so the artifact loads in any worker and only a call tells where it runs."""


def testdep_value() -> int:
    import sparkgate_testdep

    return int(sparkgate_testdep.VALUE)
