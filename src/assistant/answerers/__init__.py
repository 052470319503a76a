"""Answerers turn a question and retrieved passages into a cited answer."""

REFUSAL = "I couldn't find this in the documents."
