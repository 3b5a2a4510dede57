"""The Textual app. Imports core/train; never the other way round."""
