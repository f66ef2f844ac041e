import json

from routeraudio.errors import CLOSE_CODES, AudioFormatError, AuthError, ParameterError, ProviderError, close_code_for
from routeraudio.events import Raw, Transcript, TurnEnd, Word, error_json, to_json


def test_transcript_json_matches_spec_shape():
    t = Transcript("deepgram", "Hello, how are you?", 0.0, 0.95, False,
                   (Word("hello", 0.0, 0.42), Word("how", 0.48, 0.61, "1")))
    msg = json.loads(to_json(t, partials_enabled=False))
    assert msg == {"type": "transcript", "provider": "deepgram", "transcript": "Hello, how are you?",
                   "start_time": 0.0, "end_time": 0.95,
                   "words": [{"text": "hello", "start_time": 0.0, "end_time": 0.42, "speaker": None},
                             {"text": "how", "start_time": 0.48, "end_time": 0.61, "speaker": "1"}]}
    assert json.loads(to_json(t, partials_enabled=True))["is_partial"] is False


def test_words_null_and_turn_end():
    assert json.loads(to_json(Transcript("openai", "hi", 1, 2), partials_enabled=False))["words"] is None
    assert json.loads(to_json(TurnEnd("soniox", 3.2), partials_enabled=False)) == {
        "type": "turn_end", "provider": "soniox", "end_time": 3.2}


def test_error_frame():
    msg = json.loads(error_json("bad", 4040, provider="deepgram", provider_code=1011, provider_message="NET-0001"))
    assert msg == {"type": "error", "error": "bad", "code": 4040, "provider": "deepgram",
                   "provider_code": 1011, "provider_message": "NET-0001"}


def test_close_codes_table():
    assert close_code_for(AuthError("x")) == 3000
    assert close_code_for(ProviderError("x")) == 4040
    assert close_code_for(AudioFormatError("x")) == 1007
    assert close_code_for(ParameterError("x")) == 4000
    assert close_code_for(RuntimeError("x")) == 1011
    assert {1000, 1001, 1007, 1009, 1011, 3000, 4000, 4008, 4029, 4040} == set(CLOSE_CODES)
