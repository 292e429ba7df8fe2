"""Recommendations on the page: numbered steps become a list, `commands` become code, nothing unescaped."""

from dashboards import advice


def test_steps_become_a_list_and_commands_code():
    html = str(advice.render("/data (ext4 on /dev/sdb1, 93.0 % full):\n1. Find it: `du -xh /data | sort -h`.\n"
                             "2. Restart what holds it.\n\nAnd 1 more filesystems over the threshold."))
    assert html == ('<p>/data (ext4 on /dev/sdb1, 93.0 % full):</p><ol><li>Find it: <code class="cmd">du -xh /data | sort -h'
                    '</code>.</li><li>Restart what holds it.</li></ol><p>And 1 more filesystems over the threshold.</p>')


def test_a_plain_recommendation_is_one_paragraph_and_everything_is_escaped():
    html = str(advice.render("Look at `<script>alert(1)</script>` & the unit's \"log\"."))
    assert html == ('<p>Look at <code class="cmd">&lt;script&gt;alert(1)&lt;/script&gt;</code> &amp; the unit&#39;s '
                    '&#34;log&#34;.</p>')
