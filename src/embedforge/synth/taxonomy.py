"""The fixed vocabulary of synthetic generation: task types, brainstorm categories, languages.

Values come from docs/method.md section 1. Placeholder value sets live in conf/synth/placeholders/*.yaml
(so they can be re-weighted from the command line); this module only holds what code must know.
"""

from __future__ import annotations

from embedforge.data.schema import TASK_TYPES

# Task types whose task definitions are brainstormed by the LLM first (step 1).
BRAINSTORM_TYPES: tuple[str, ...] = ("short_long", "long_short", "short_short", "long_long")

# STS and bitext skip step 1: their task definition is fixed.
FIXED_TASK_DEFINITIONS: dict[str, str] = {
    "sts": "Retrieve semantically similar text.",
    "bitext": "Retrieve parallel sentences.",
}

# JSON keys the generator must return per task type, in (query, positive, negative) order;
# negative is None where the paper has no hard negative.
OUTPUT_KEYS: dict[str, tuple[str, str, str | None]] = {
    "short_long": ("user_query", "positive_document", "hard_negative_document"),
    "long_short": ("input_text", "label", "misleading_label"),
    "short_short": ("input", "positive_document", None),
    "long_long": ("input", "positive_document", None),
    "sts": ("S1", "S2", "S3"),
    "bitext": ("S1", "S2", "S3"),
}

# Rough completion sizes (tokens) used only by dry-run cost estimates.
EXPECTED_OUTPUT_TOKENS: dict[str, int] = {
    "brainstorm": 700,
    "short_long": 550,
    "long_short": 300,
    "short_short": 60,
    "long_long": 950,
    "sts": 150,
    "bitext": 150,
}

# XLM-R's pre-training languages (CC-100), without its romanised / alternate-script duplicates,
# as ISO 639-1 code -> English name (the name is what prompts show the LLM).
XLMR_LANGUAGES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani",
    "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "br": "Breton", "bs": "Bosnian",
    "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "fy": "Western Frisian", "ga": "Irish",
    "gd": "Scottish Gaelic", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa", "he": "Hebrew",
    "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian",
    "is": "Icelandic", "it": "Italian", "ja": "Japanese", "jv": "Javanese", "ka": "Georgian",
    "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "ku": "Kurdish",
    "ky": "Kyrgyz", "la": "Latin", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian",
    "mg": "Malagasy", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi",
    "ms": "Malay", "my": "Burmese", "ne": "Nepali", "nl": "Dutch", "no": "Norwegian",
    "om": "Oromo", "or": "Odia", "pa": "Punjabi", "pl": "Polish", "ps": "Pashto",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit", "sd": "Sindhi",
    "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "so": "Somali", "sq": "Albanian",
    "sr": "Serbian", "su": "Sundanese", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Filipino", "tr": "Turkish", "ug": "Uyghur",
    "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "xh": "Xhosa",
    "yi": "Yiddish", "zh": "Chinese",
}

__all__ = [
    "TASK_TYPES",
    "BRAINSTORM_TYPES",
    "FIXED_TASK_DEFINITIONS",
    "OUTPUT_KEYS",
    "EXPECTED_OUTPUT_TOKENS",
    "XLMR_LANGUAGES",
    "language_name",
]


def language_name(code: str) -> str:
    return XLMR_LANGUAGES[code]
