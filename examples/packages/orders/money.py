"""Helpers of the example package: not functions of their own, just imported code."""


def rounded(amount: float, currency: str) -> str:
    return f"{amount:.2f} {currency}"
