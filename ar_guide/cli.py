"""The ``ar-guide`` command line (placeholder until the apps land)."""


def main(argv=None) -> int:
    print("ar-guide: under construction")
    return 0
