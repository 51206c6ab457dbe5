"""The semantic cache (`[modules.semantic_cache]`, issue 10) as the OpenAI
SDK sees it: a paraphrase of a stored conversation (the same words in
another order, case and punctuation — the mock embeds texts by their words)
is answered with the stored answer and `x-tollgate-cache: semantic-hit`
(read through `with_raw_response`), with only tollgate's own embeddings call
reaching the upstream; an unrelated prompt misses.

Uses its own tollgate with both caches on; upstream request counts come
from the mock's `GET /__mock/stats` control route.
"""

from __future__ import annotations

import pytest

from conftest import CHAT_MODEL, launch_tollgate, make_openai_client
from test_cache import mock_requests


@pytest.fixture(scope="module")
def semantic_tollgate(tmp_path_factory, mock_upstream):
    yield from launch_tollgate(
        tmp_path_factory,
        mock_upstream.base_url,
        "tollgate-semantic-cache",
        extra=(
            "\n[modules.cache]\nenabled = true\n"
            "\n[modules.semantic_cache]\nenabled = true\ndimensions = 256\n"
        ),
    )


def ask(system: str, user: str):
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]


def test_a_paraphrase_is_a_semantic_hit_and_an_unrelated_prompt_misses(
    semantic_tollgate, client_key, mock_upstream
):
    with make_openai_client(semantic_tollgate, client_key) as oai:
        create = oai.chat.completions.with_raw_response.create
        before = mock_requests(mock_upstream)
        first = create(
            model=CHAT_MODEL,
            messages=ask("Be terse.", "Which ocean is the largest on Earth?"),
            temperature=0.3,
        )
        assert first.headers["x-tollgate-cache"] == "miss"
        # The chat call and tollgate's embeddings call.
        assert mock_requests(mock_upstream) == before + 2

        para = create(
            model=CHAT_MODEL,
            messages=ask("Be terse.", "the largest ocean on earth: which is"),
            temperature=0.3,
        )
        assert para.headers["x-tollgate-cache"] == "semantic-hit"
        assert mock_requests(mock_upstream) == before + 3, "only the embeddings call"
        a, b = first.parse(), para.parse()
        assert b.id == a.id, "the stored answer"
        assert b.choices[0].message.content == a.choices[0].message.content

        other = create(
            model=CHAT_MODEL,
            messages=ask("Be terse.", "How many legs does a spider have?"),
            temperature=0.3,
        )
        assert other.headers["x-tollgate-cache"] == "miss"
        assert other.parse().id != a.id
        assert mock_requests(mock_upstream) == before + 5
