"""Every sentence people read in the closure's thread and in the bot's replies, and a state in
words: pure functions of plain data, one module per subject (words, thread, replies, slack, and
the requests, data loss, pings, persisted facts, plan command and summary sentences).
Block Kit layout is `bot.blocks`'; the Home tab's is `bot.home`'. Callers use `bot.messages.X`."""

from bot.messages.dataloss import *  # noqa: F403
from bot.messages.files import *  # noqa: F403
from bot.messages.persist import *  # noqa: F403
from bot.messages.pings import *  # noqa: F403
from bot.messages.plancmd import *  # noqa: F403
from bot.messages.recyclebin import *  # noqa: F403
from bot.messages.replies import *  # noqa: F403
from bot.messages.requests import *  # noqa: F403
from bot.messages.slack import *  # noqa: F403
from bot.messages.summary import *  # noqa: F403
from bot.messages.thread import *  # noqa: F403
from bot.messages.words import *  # noqa: F403
