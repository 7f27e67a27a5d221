from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("wagtail_client_billing", "0007_email_settings_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="notification",
            name="retry_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
