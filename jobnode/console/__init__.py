"""The console: the web page every node serves at /ui/ to watch and steer the cluster.

`static/` holds plain HTML, CSS and JavaScript modules shipped in the wheel as they are (no
build step); the page talks only to the public API and the event stream, like any client.
`site` serves those files with the headers that keep the page from running anything else.
"""
