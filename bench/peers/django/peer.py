"""Peer: Django Channels with channels_redis, as the seeds' Django Channels design has it.

A socket on /ws?user=<id> joins the group ``notifications-<id>`` (or ``bench``); the HTTP
view POST /publish?user=<id> calls ``group_send`` with the body, and every consumer in the
group sends it on as a text frame. The text ``ping`` is answered with ``pong``. Settings,
routing and the app live in this one module; run it with uvicorn:
``REDIS_URL=redis://127.0.0.1:PORT uvicorn peer:application``.
"""

import os

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["channels"],
    MIDDLEWARE=[],
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
        }
    },
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpResponse, HttpResponseNotAllowed  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def group(user):
    return f"notifications-{user}" if user else "bench"


class Notifications(AsyncWebsocketConsumer):
    async def connect(self):
        query = dict(
            pair.split("=", 1)
            for pair in self.scope["query_string"].decode().split("&")
            if "=" in pair
        )
        self.group = group(query.get("user"))
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data == "ping":
            await self.send(text_data="pong")

    async def notification(self, event):
        await self.send(text_data=event["body"])


@csrf_exempt
async def publish(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    body = request.body.decode()
    await get_channel_layer().group_send(
        group(request.GET.get("user")), {"type": "notification", "body": body}
    )
    return HttpResponse("accepted", status=202, content_type="text/plain")


urlpatterns = [path("publish", publish)]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("ws", Notifications.as_asgi())]),
    }
)
