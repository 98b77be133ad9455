"""The gateway's MQTT client id: kept across restarts, not derived from the gateway id alone."""

import re

from edge_aae.gateway.identity import CLIENT_ID_FILE, session_client_id


def test_the_id_is_made_once_and_kept(tmp_path):
    first = session_client_id(tmp_path, "gw1")
    assert re.fullmatch(r"edge-aae-gw1-[0-9a-f]{16}", first)
    assert session_client_id(tmp_path, "gw1") == first
    assert (tmp_path / CLIENT_ID_FILE).read_text().strip() == first
    assert (tmp_path / CLIENT_ID_FILE).stat().st_mode & 0o077 == 0  # not readable by other users
    (tmp_path / "other").mkdir()
    assert session_client_id(tmp_path / "other", "gw1") != first  # random, not derived from the gateway id


def test_another_gateway_id_or_a_damaged_file_gets_a_new_id(tmp_path):
    first = session_client_id(tmp_path, "gw1")
    second = session_client_id(tmp_path, "gw2")
    assert second.startswith("edge-aae-gw2-")
    assert second != first
    (tmp_path / CLIENT_ID_FILE).write_text("edge-aae-gw2\n")  # no random part: guessable, replaced
    third = session_client_id(tmp_path, "gw2")
    assert re.fullmatch(r"edge-aae-gw2-[0-9a-f]{16}", third)


def test_a_state_folder_that_cannot_be_written_still_gives_an_id(tmp_path, caplog):
    not_a_folder = tmp_path / "state"
    not_a_folder.write_text("a file where the folder should be")  # refused even to root
    cid = session_client_id(not_a_folder, "gw1")
    assert re.fullmatch(r"edge-aae-gw1-[0-9a-f]{16}", cid)
    assert "cannot keep the MQTT client id" in caplog.text
