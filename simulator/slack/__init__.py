"""The simulated Slack workspace: Web API, Events API and Socket Mode, as Slack documents them."""
